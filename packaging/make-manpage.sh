#!/bin/sh
# make-manpage.sh BINARY VERSION OUT
#
# Writes memlend(1) from the binary's own --help, one section per command,
# so that the man page covers every option there is, with no second list to
# keep in step. The prose around it (config file, logging, metrics, files,
# exit status) is written here.
set -eu

bin=$1
version=$2
out=$3

# Help text to roff: escape backslashes, guard lines that start with a
# control character, and turn options into .TP entries.
help_to_roff() {
  awk '
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
        print "\\fB" s "\\fR"
        print text(desc)
      }
      sig = ""; desc = ""
    }
    /^Usage:/ { usage = 1; print ".PP"; print "Usage: \\fB" esc(substr($0, 8)) "\\fR"; next }
    /^Options:$/ { options = 1; next }
    /^Subcommands:$/ { flush(); options = 0; skip = 1; next }
    skip { next }
    options && /^  -/ {
      flush()
      line = substr($0, 3)
      split_at = match(line, /  +/)
      if (split_at) { sig = substr(line, 1, split_at - 1); desc = substr(line, split_at + RLENGTH) }
      else { sig = line; desc = "" }
      next
    }
    options && /^          / {
      sub(/^ +/, "")
      desc = (desc == "" ? $0 : desc " " $0)
      next
    }
    /^$/ { flush(); options = 0; next }
    !usage { print text($0); next }
  END { flush() }
  '
}

commands=$("$bin" --help | awk '/^Subcommands:$/ { on = 1; next } on && /^  [a-z]/ { print $1 } /^$/ { on = 0 }')

{
  printf '.TH MEMLEND 1 "" "memlend %s" "User Commands"\n' "$version"
  printf '.SH NAME\nmemlend \\- lend VMs memory from other hosts of their cluster\n'
  printf '.SH SYNOPSIS\n'
  for c in $commands; do
    printf '.B memlend %s\n[\\fIOPTIONS\\fR]\n.br\n' "$c"
  done
  printf '.SH DESCRIPTION\n'
  "$bin" --help | awk '/^Usage:/ { exit } { print }' | help_to_roff
  printf '.SH COMMANDS\n'
  for c in $commands; do
    printf '.SS "memlend %s"\n' "$c"
    "$bin" "$c" --help | help_to_roff
  done
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
(mode 0700).
.TP
.I /lib/systemd/system/memlend.service
The systemd unit. A shared datastore outside \fI/var/lib/memlend\fR needs
write access added with \fBsystemctl edit memlend\fR
(\fBReadWritePaths=\fR\fIPATH\fR), as the unit makes the rest of the file
system read-only.
.TP
.I /usr/share/memlend/memlend-alerts.yml
Prometheus alert rules.
.TP
.I /usr/share/memlend/memlend-dashboard.json
The Grafana dashboard.
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
.SH SEE ALSO
.BR systemctl (1),
.BR journalctl (1),
.BR prometheus (1)
EOF
} > "$out"
