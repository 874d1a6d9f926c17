#!/bin/sh
# make-manpage.sh BINARY VERSION OUTDIR
#
# Writes memlend(1) and one page per command, memlend-COMMAND(1), into
# OUTDIR from the binary's own --help, so that the pages cover every command
# and every option there is, with no second list to keep in step. The prose
# around them (config file, logging, metrics, files, exit status) is
# written here, once, in memlend(1).
set -eu

bin=$1
version=$2
out=$3

# help_to_roff SECTION [PAGE]: the entries of a help text's SECTION (Options,
# Subcommands) as .TP entries, each entry's signature in bold (with PAGE, as
# a reference to the page PAGE-SIGNATURE(1)); SECTION None: the text itself.
# An entry's description follows its signature two spaces later or on
# indented lines of its own. Backslashes are escaped and a line that starts
# with a control character is guarded.
help_to_roff() {
  awk -v section="${1:-Options}" -v link="${2:-}" '
    function esc(s) {
      gsub(/\\/, "\\e", s)
      return s
    }
    function text(s) {
      s = esc(s)
      if (s ~ /^[.\x27]/) s = "\\&" s
      return s
    }
    function flush() {
      if (sig != "") {
        print ".TP"
        s = esc(sig)
        gsub(/-/, "\\-", s)
        if (link != "") print "\\fB" link "\\-" s "\\fR(1)"
        else print "\\fB" s "\\fR"
        print text(desc)
      }
      sig = ""; desc = ""
    }
    /^Usage:/ { usage = 1; next }
    $0 == section ":" { entries = 1; next }
    /^[A-Z][a-z]*:$/ { flush(); entries = 0; next }
    entries && /^  [^ ]/ {
      flush()
      line = substr($0, 3)
      split_at = match(line, /  +/)
      if (split_at) { sig = substr(line, 1, split_at - 1); desc = substr(line, split_at + RLENGTH) }
      else { sig = line; desc = "" }
      next
    }
    entries && /^          / {
      sub(/^ +/, "")
      desc = (desc == "" ? $0 : desc " " $0)
      next
    }
    /^$/ { flush(); entries = 0; next }
    section == "None" && !usage { print text($0) }
  END { flush() }
  '
}

# The description above "Usage:", roff-escaped.
description() {
  awk '/^Usage:/ { exit } { print }' | help_to_roff None
}

# A short what-is line for each command, for apropos and the NAME section;
# a command without one gets the first line of its own help.
whatis() {
  case $1 in
    plan) echo "decide, once, what memlend would do for a cluster snapshot" ;;
    run) echo "run the controller on a simulated cluster or the built-in demo" ;;
    state) echo "show what the controller's store holds" ;;
    why) echo "show the decisions the controller made for one VM, and why" ;;
    agent) echo "run memlend's side of one host of a cluster" ;;
    donor) echo "serve a pool of memory that other hosts borrow" ;;
    probe) echo "check the data path to a donor" ;;
    mount) echo "serve memory lent by a donor as a file a VMM maps" ;;
    inspect) echo "print what memlend sees on this node through its platform" ;;
    version) echo "print the version of memlend" ;;
    check-config) echo "check a memlend configuration file" ;;
    support-bundle) echo "write one archive of what support needs, without key material" ;;
    members) echo "list the members of the replicated store's cluster, or remove a dead one" ;;
    *) "$bin" "$1" --help | head -n 1 | sed 's/^\(.\)/\L\1/; s/[.:]$//' ;;
  esac
}

commands=$("$bin" --help | awk '/^Subcommands:$/ { on = 1; next } on && /^  [a-z]/ { print $1 } /^$/ { on = 0 }')

mkdir -p "$out"
rm -f "$out"/*.1 "$out"/*.1.gz

exit_status() {
  cat <<'EOF'
.SH EXIT STATUS
.TP
.B 0
Done.
.TP
.B 1
A fatal error while running.
.TP
.B 2
Bad input: a flag, a file, the configuration file, an address in use.
EOF
}

for c in $commands; do
  page=$(printf '%s' "memlend-$c" | tr 'a-z' 'A-Z')
  help=$("$bin" "$c" --help)
  {
    printf '.TH %s 1 "" "memlend %s" "User Commands"\n' "$page" "$version"
    printf '.SH NAME\nmemlend\\-%s \\- %s\n' "$(printf '%s' "$c" | sed 's/-/\\-/g')" "$(whatis "$c")"
    # "Usage: memlend why [OPTIONS] VM": the command in bold, the rest as it is.
    usage=$(printf '%s\n' "$help" | sed -n "s/^Usage: memlend $c //p" | sed 's/\\/\\e/g; s/-/\\-/g')
    printf '.SH SYNOPSIS\n.B memlend %s\n%s\n' "$c" "$usage"
    printf '.SH DESCRIPTION\n'
    printf '%s\n' "$help" | description
    if printf '%s\n' "$help" | grep -q '^Positionals:$'; then
      printf '.SH ARGUMENTS\n'
      printf '%s\n' "$help" | help_to_roff Positionals
    fi
    printf '.SH OPTIONS\n'
    printf '%s\n' "$help" | help_to_roff Options
    if printf '%s\n' "$help" | grep -q '^  --config '; then
      cat <<'EOF'
.PP
Every long option may also be given in the configuration file of
\fB\-\-config\fR, as \fIkey\fR = \fIvalue\fR without its dashes; the command
line wins. See \fBmemlend\fR(1).
EOF
    fi
    exit_status
    printf '.SH SEE ALSO\n.BR memlend (1)\n'
  } > "$out/memlend-$c.1"
done

{
  printf '.TH MEMLEND 1 "" "memlend %s" "User Commands"\n' "$version"
  printf '.SH NAME\nmemlend \\- lend VMs memory from other hosts of their cluster\n'
  printf '.SH SYNOPSIS\n'
  for c in $commands; do
    printf '.B memlend %s\n[\\fIOPTIONS\\fR]\n.br\n' "$c"
  done
  printf '.B memlend \\-\\-version\n'
  printf '.SH DESCRIPTION\n'
  "$bin" --help | description
  printf '.PP\nEach command has its own page, with every option it takes.\n'
  printf '.SH COMMANDS\n'
  "$bin" --help | help_to_roff Subcommands memlend
  cat <<'EOF'
.SH CONFIGURATION FILE
A command that takes \fB\-\-config\fR \fIFILE\fR reads options from
\fIFILE\fR as well as from the command line; the command line wins.
Each line is \fIkey\fR = \fIvalue\fR, the key being a long option without its
dashes (\fBlog\-level = "debug"\fR, \fBdry\-run = true\fR). Values may be
"double" or 'single' quoted; \fB#\fR starts a comment. One file serves every
command: a key that only another command takes is skipped. An unknown key, a
bad value, a repeated key or a malformed line stops memlend with exit status 2
and a message naming the file, the line and the key.
.PP
The package installs \fI/etc/memlend/memlend.conf\fR, which lists every key
with its default, commented out, and the systemd unit runs
\fBmemlend run \-\-config /etc/memlend/memlend.conf\fR.
Relative paths are relative to the working directory, \fI/var/lib/memlend\fR
under systemd.
.SH LOGGING
memlend logs one event at a time, at the level of \fB\-\-log\-level\fR
(trace, debug, info, warn, error or off; \fBplan\fR is quiet by default and
logs warnings only). On a terminal each event is a line on standard error that
starts with the UTC time and the level, and \fBrun\fR and \fBagent\fR print
what they do on standard output.
.PP
Under systemd (when \fBJOURNAL_STREAM\fR names memlend's standard error)
every event, what \fBrun\fR and \fBagent\fR do included, goes to the
journal with its priority and the fields it has: \fBMEMLEND_EVENT\fR (the
event log's name, such as lease_granted), \fBMEMLEND_VM\fR,
\fBMEMLEND_HOST\fR, \fBMEMLEND_DONOR\fR, \fBMEMLEND_LEASE\fR and
\fBMEMLEND_T_S\fR (the scenario clock). So
\fBjournalctl MEMLEND_VM=web\-1\fR shows one VM's story and
\fBjournalctl \-u memlend \-p warning\fR warnings and errors only. Should
the journal's socket not take an event, it goes to standard error as a line
that starts with its syslog priority instead.
.PP
\fB\-\-log\-format json\fR writes each event, those of \fBrun\fR and
\fBagent\fR included, as one JSON object per line on standard error, for
other collectors: \fBtime\fR (UTC, RFC 3339, milliseconds), \fBlevel\fR,
\fBmessage\fR, and \fBevent\fR, \fBvm\fR, \fBhost\fR, \fBdonor\fR,
\fBlease\fR and \fBt_s\fR where the event has them.
.SH METRICS
With \fB\-\-metrics\fR \fIADDR\fR (for example 127.0.0.1:9464) memlend serves
Prometheus metrics at http://\fIADDR\fR/metrics: every name starts with
\fBmemlend_\fR and is in base units (bytes, hertz, seconds). The README lists
them. Alert rules and a Grafana dashboard are installed in
\fI/usr/share/memlend/\fR.
.SH FILES
.TP
.I /etc/memlend/memlend.conf
The configuration file of the service.
.TP
.I /var/lib/memlend/
The service's state: the store and, by default, the mirror files' datastore
(mode 0700, owned by the user \fBmemlend\fR once the service has started).
.TP
.I /lib/systemd/system/memlend.service
The systemd unit. It runs memlend as the user \fBmemlend\fR with no
capability. A shared datastore outside \fI/var/lib/memlend\fR needs write
access added with \fBsystemctl edit memlend\fR
(\fBReadWritePaths=\fR\fIPATH\fR), as the unit makes the rest of the file
system read-only, and must belong to \fBmemlend\fR.
.TP
.I /lib/udev/rules.d/60-memlend.rules
Gives the group \fBmemlend\fR \fI/dev/userfaultfd\fR, which the data path maps
lent memory with.
.TP
.I /usr/share/bash-completion/completions/memlend
Completion of commands, options and their values in bash.
.TP
.I /usr/share/memlend/memlend-alerts.yml
Prometheus alert rules.
.TP
.I /usr/share/memlend/memlend-dashboard.json
The Grafana dashboard.
EOF
  exit_status
  # Unhyphenated: a page's name broken across lines is no name to search for.
  printf '.SH SEE ALSO\n.nh\n'
  for c in $commands; do
    printf '.BR memlend\\-%s (1),\n' "$(printf '%s' "$c" | sed 's/-/\\-/g')"
  done
  printf '.BR systemctl (1),\n.BR journalctl (1),\n.BR prometheus (1)\n'
} > "$out/memlend.1"
