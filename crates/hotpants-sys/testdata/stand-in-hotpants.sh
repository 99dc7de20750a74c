#!/bin/sh
# A stand-in for HOTPANTS used by the diffim and diffim-cli tests (see
# hotpants_sys::test_support): checks that its inputs exist, then copies them to the outputs
# (diff = science, conv = template, noise = science noise, mask = science mask). With FAIL=1
# in its environment it fails like HOTPANTS does (message on stderr, status 1).
if [ -n "$FAIL" ]; then echo "FATAL ERROR fake HOTPANTS failing on purpose" >&2; exit 1; fi
while [ $# -gt 0 ]; do
  case "$1" in
    -inim) inim=$2; shift 2;;
    -tmplim) tmplim=$2; shift 2;;
    -outim) outim=$2; shift 2;;
    -oci) oci=$2; shift 2;;
    -oni) oni=$2; shift 2;;
    -omi) omi=$2; shift 2;;
    -ini) ini=$2; shift 2;;
    -imi) imi=$2; shift 2;;
    -ssf) ssf=$2; shift 2;;
    -ng) n=$2; shift $((2 + 2 * n));;
    -okn|-hki|-sconv|-convvar) shift;;
    *) shift 2;;
  esac
done
for f in "$inim" "$tmplim" "$ini" "$imi" ${ssf:+"$ssf"}; do
  [ -f "$f" ] || { echo "FATAL ERROR missing input '$f'" >&2; exit 1; }
done
cp "$inim" "$outim" && cp "$tmplim" "$oci" && cp "$ini" "$oni" && cp "$imi" "$omi" || exit 2
echo SUCCESS >&2
