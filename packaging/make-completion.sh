#!/bin/sh
# make-completion.sh BINARY OUT
#
# Writes bash's completion of memlend from the binary's own --help: its
# commands, each command's options, and what each option's value is, by the
# placeholder its help shows: FILE and DIR complete paths, {a,b,c} those
# words, any other placeholder nothing (a flag has none). A new command or
# option is completed from the next build on, with nothing to keep in step.
set -eu

bin=$1
out=$2

# Every option of a help text, one line each: NAME KIND, KIND being flag,
# file, dir, value or the choices "a b c" (aliases such as -h,--help share one).
options() {
  awk '
    /^Options:$/ { on = 1; next }
    /^[A-Z][a-z]*:$/ || /^$/ { on = 0 }
    on && /^  -/ {
      split(substr($0, 3), w, / +/)
      kind = "flag"
      type = w[2]
      sub(/=.*/, "", type)
      if (type == "FILE") kind = "file"
      else if (type == "DIR") kind = "dir"
      else if (type ~ /\{.*\}/) {
        kind = type
        sub(/^[^{]*\{/, "", kind); sub(/\}.*/, "", kind); gsub(/,/, " ", kind)
      } else if (type ~ /^[A-Z]+$/) kind = "value"
      n = split(w[1], names, ",")
      for (i = 1; i <= n; i++) print names[i] "\t" kind
    }
  '
}

commands=$("$bin" --help | awk '/^Subcommands:$/ { on = 1; next } on && /^  [a-z]/ { print $1 } /^$/ { on = 0 }')

{
  cat <<'EOF'
# bash completion for memlend                              -*- shell-script -*-
# Made from memlend's own --help by make-completion.sh when memlend was built.

# "COMMAND OPTION" -> flag, file, dir, value, or the words of its choices;
# " OPTION" for the options before a command.
declare -gA _memlend_kind=(
EOF
  "$bin" --help | options | while IFS='	' read -r name kind; do
    printf '  [" %s"]="%s"\n' "$name" "$kind"
  done
  for c in $commands; do
    "$bin" "$c" --help | options | while IFS='	' read -r name kind; do
      printf '  ["%s %s"]="%s"\n' "$c" "$name" "$kind"
    done
  done
  printf ')\n_memlend_commands="%s"\n' "$(echo $commands)"
  cat <<'EOF'

_memlend() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} cmd="" word key i
  COMPREPLY=()
  # The command is the first word that is one; the options before it are memlend's own.
  for ((i = 1; i < COMP_CWORD; i++)); do
    if [[ " $_memlend_commands " == *" ${COMP_WORDS[i]} "* ]]; then
      cmd=${COMP_WORDS[i]}
      break
    fi
  done
  # --opt=value arrives as "--opt" "=" "value" (= breaks words).
  if [[ $cur == "=" ]]; then
    cur=""
  elif [[ $prev == "=" ]]; then
    prev=${COMP_WORDS[COMP_CWORD - 2]}
  fi
  if [[ $prev == -* && ${COMP_WORDS[COMP_CWORD]} != -* ]]; then
    case ${_memlend_kind["$cmd $prev"]-} in
      file)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
      dir)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        return
        ;;
      flag | "") ;;
      value) return ;;
      *)
        mapfile -t COMPREPLY < <(compgen -W "${_memlend_kind["$cmd $prev"]}" -- "$cur")
        return
        ;;
    esac
  fi
  if [[ -z $cmd && $cur != -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$_memlend_commands" -- "$cur")
  elif [[ $cur == -* ]]; then
    local words=""
    for key in "${!_memlend_kind[@]}"; do
      [[ ${key%% *} == "$cmd" ]] && words+=" ${key#* }"
    done
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
  fi
}
complete -F _memlend memlend
EOF
} > "$out"
