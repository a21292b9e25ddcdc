#!/usr/bin/env bash
# Mozilla's root store (certdata.txt of the ca-certificates source package) as one PEM file.
#
#   deps/roots.sh CERTDATA BLACKLIST > roots.pem
#
# The selection of the package's own mozilla/certdata2pem.py, from which Debian makes
# /etc/ssl/certs/ca-certificates.crt: every certificate trusted to issue server certificates
# (CKA_TRUST_SERVER_AUTH CKT_NSS_TRUSTED_DELEGATOR) whose label the blacklist does not name.
# Theirs needs python3-cryptography, only to warn about expired roots; this needs awk and
# coreutils. The certificates come out in certdata.txt's order.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 CERTDATA BLACKLIST" >&2; exit 2; }

# One line per trusted certificate: its DER bytes as octal escapes (\060\202...). Objects
# are blocks of "ATTRIBUTE TYPE VALUE" lines ended by a blank line; a trust object names its
# certificate by label and may come after it.
awk '
  FILENAME == ARGV[1] { sub(/#.*/, ""); gsub(/^[ \t]+|[ \t]+$/, ""); if ($0 != "") banned[$0] = 1; next }
  !data { data = /^BEGINDATA/; next }
  /^#/ { next }
  /^[ \t]*$/ { finish(); next }
  inval { if ($0 == "END") inval = 0; else if (field == "CKA_VALUE") value = value $0; next }
  {
    field = $1
    if ($2 == "MULTILINE_OCTAL") { inval = 1; next }
    if (field == "CKA_CLASS") class = $3
    else if (field == "CKA_LABEL") { label = $0; sub(/^CKA_LABEL UTF8 /, "", label) }
    else if (field == "CKA_TRUST_SERVER_AUTH") sauth = $3
  }
  END { finish(); for (i = 1; i <= n; i++) if (trusted[labels[i]]) print values[i] }
  function finish() {
    if (class == "CKO_CERTIFICATE") { labels[++n] = label; values[n] = value }
    else if (class == "CKO_NSS_TRUST" && sauth == "CKT_NSS_TRUSTED_DELEGATOR" && !banned[label])
      trusted[label] = 1
    class = label = sauth = value = ""
  }
' "$2" "$1" | while read -r der; do
  echo "-----BEGIN CERTIFICATE-----"
  printf "$der" | base64 -w 64 # the line holds only \NNN escapes, which printf turns into bytes
  echo "-----END CERTIFICATE-----"
done
