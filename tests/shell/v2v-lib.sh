# v2v-lib.sh: what the v2v tests share beyond lib.sh.  Source it after.

# validate WHAT XML: virt-xml-validate accepts the libvirt domain XML.
validate () {
  local out
  if out=$(virt-xml-validate "$2" domain 2>&1); then
    ok "$1: virt-xml-validate accepts the domain"
  else
    not_ok "$1: virt-xml-validate accepts the domain" "$out" "$(cat "$2")"
  fi
}
