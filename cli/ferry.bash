# bash completion for ferry(1): its commands, each command's options, the
# values of the options that take one from a fixed set (formats, cache
# modes, --to, --accel, ...), and files.  Installed as "ferry" in
# bash-completion's completionsdir, which loads it the first time ferry is
# completed; it needs nothing from bash-completion (source it by hand to
# try it).  tests/shell/cli-docs.sh checks that every option of each
# command's --help is here and in ferry(1).

# Each command's options; a trailing ":" marks one that takes a value in
# the next word (or after "=").
_ferry_options_info='-f: --format: --json --output: --backing-chain --strict -U --force-share
  --timeout:'
_ferry_options_convert='-f: -O: -o: -B: -F: -c -p --progress -m: -n -t: --strict -U
  --force-share --timeout:'
_ferry_options_compare='-f: -F: -s --strict -p -U --force-share --timeout:'
_ferry_options_check='-f: --format: --json --output: -U --force-share'
_ferry_options_map='-f: --format: --context: --totals --json --strict -U --force-share
  --timeout:'
_ferry_options_serve='-f: --format: -p: --port: -b: --bind: -s: --socket: -r --readonly
  --tls-psk: --tls-certs: -e: --export: -U --force-share'
_ferry_options_v2v='--to: --out: -O: --network-map: --name: --keep-devices --flavor:
  --dry-run --json -p --progress -m: -t: --no-convert --no-guest-agent --verify
  --verify-timeout: --store:'
_ferry_options_job='--store: --start --test --json --plan: --watch --wait -p --progress --to:
  --out: -O: --network-map: --name: --keep-devices --flavor: -m: -t: --no-convert
  --no-guest-agent --verify --verify-timeout: --mode: --domain: --cutover:
  --max-downtime: --round-interval: --source-stop: --shutdown-timeout:'
_ferry_options_plan='--store: --parallel: --stagger: --per-source: --json'
_ferry_options_inspect='-f: --format: --json --output: -U --force-share'
_ferry_options_convert_guest='-f: --format: --mac: --no-guest-agent --json'
_ferry_options_verify='--boot --expect: --timeout: --disk-bus: --nic: --mac: --memory:
  --vcpus: --firmware: --accel: --kvm-stall: --console --json -f: --format:'
_ferry_options_qmp='--disks --event: --timeout:'
_ferry_commands='info convert compare check map serve v2v job plan inspect convert-guest
  verify qmp'
# The subcommands of the commands that have them, in the word after the
# command.
_ferry_subcommands_job='add list show start pause resume cancel retry rm run cutover'
_ferry_subcommands_plan='run show'
_ferry_formats='raw qcow2 vmdk vhd vpc vhdx vdi nbd'

# _ferry_values CMD OPTION: what OPTION of CMD takes, as a word list, or
# "@files" or "@dirs"; nothing when its value is free text.
_ferry_values () {
  case $1:$2 in
    *:-f|*:--format|convert:-O|convert:-F|compare:-F|v2v:-O|job:-O) echo "$_ferry_formats" ;;
    *:-t) echo "unsafe writeback none writethrough directsync" ;;
    *:--progress) echo "bar json none" ;;
    *:--output) echo "json human" ;;
    convert:-B|serve:-s|serve:--socket|serve:--tls-psk|*:--store) echo "@files" ;;
    serve:--tls-certs|v2v:--out|job:--out) echo "@dirs" ;;
    v2v:--to|job:--to) echo "libvirt qemu ova local" ;;
    v2v:--flavor|job:--flavor) echo "vmware virtualbox" ;;
    job:--mode) echo "cold warm" ;;
    job:--cutover) echo "now manual" ;;
    job:--source-stop) echo "shutdown pause" ;;
    job:--domain) echo "@files" ;;
    verify:--disk-bus) echo "virtio scsi lsi sata ide" ;;
    verify:--nic) echo "virtio e1000 none" ;;
    verify:--firmware) echo "bios uefi" ;;
    verify:--accel) echo "auto kvm tcg" ;;
  esac
}

# _ferry_complete_values CUR WORDS: COMPREPLY from a word list, files or
# folders.
_ferry_complete_values () {
  local cur=$1 words=$2
  case $words in
    @files)
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
    @dirs)
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
    *)
      mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur") ;;
  esac
}

# _ferry: the completion function (complete -F).
_ferry () {
  local cur=${COMP_WORDS[COMP_CWORD]} prev="" cmd="" cmd_at=0 opts="" o i values
  COMPREPLY=()
  [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}

  # The command: the first word after ferry that is not an option.
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      -*) ;;
      *) cmd=${COMP_WORDS[i]}; cmd_at=$i; break ;;
    esac
  done
  if [ -z "$cmd" ]; then
    if [[ $cur == -* ]]; then
      mapfile -t COMPREPLY < <(compgen -W "--help --version" -- "$cur")
    else
      mapfile -t COMPREPLY < <(compgen -W "$_ferry_commands" -- "$cur")
    fi
    return 0
  fi
  o=_ferry_options_${cmd//-/_}
  opts=${!o:-}
  [ -n "$opts" ] || return 0

  # A value after "--opt=": bash splits "=" into a word of its own when
  # COMP_WORDBREAKS holds it (the default), else it is part of CUR.
  if [ "$cur" = "=" ] && [[ $prev == --* ]]; then
    values=$(_ferry_values "$cmd" "$prev")
    _ferry_complete_values "" "$values"
    return 0
  fi
  if [ "$prev" = "=" ] && [ "$COMP_CWORD" -gt 1 ] &&
     [[ ${COMP_WORDS[COMP_CWORD - 2]} == --* ]]; then
    values=$(_ferry_values "$cmd" "${COMP_WORDS[COMP_CWORD - 2]}")
    _ferry_complete_values "$cur" "$values"
    return 0
  fi
  if [[ $cur == --*=* ]]; then
    values=$(_ferry_values "$cmd" "${cur%%=*}")
    _ferry_complete_values "${cur#*=}" "$values"
    for i in "${!COMPREPLY[@]}"; do
      COMPREPLY[i]=${cur%%=*}=${COMPREPLY[i]}
    done
    return 0
  fi

  # A value in the word after an option that takes one.
  for o in $opts; do
    if [ "$o" = "$prev:" ]; then
      values=$(_ferry_values "$cmd" "$prev")
      [ -n "$values" ] && _ferry_complete_values "$cur" "$values"
      return 0
    fi
  done

  if [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${opts//:/} --help" -- "$cur")
    return 0
  fi
  # A subcommand (job, plan) in the word after the command.
  o=_ferry_subcommands_${cmd//-/_}
  if [ -n "${!o:-}" ] && [ "$COMP_CWORD" -eq $((cmd_at + 1)) ]; then
    mapfile -t COMPREPLY < <(compgen -W "${!o}" -- "$cur")
    return 0
  fi
  # Images, sources and folders.
  compopt -o filenames 2>/dev/null
  mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  return 0
}

complete -F _ferry ferry
