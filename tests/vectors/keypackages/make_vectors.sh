#!/bin/sh
# Build jtca key packages (GM/T 0010 SignedData over EnvelopedData / GM/T 0009 SM2EnvelopedKey)
# with the OpenSSL 3 command line alone: no jtca code, no Python. See README.md.
#
#   make_vectors.sh [OUTPUT_DIR]      (default: this script's directory)
#
# Writes TEST KEYS ONLY (sender-sign.pem, recipient-enc.pem, city-sm2.pem, city-sm4.hex) unless
# they already exist in OUTPUT_DIR, and the packages package-sm4.der and package-sm2.der.
# The OIDs: GM/T 0006 (SM2 1.2.156.10197.1.301.1/.3, SM3 .1.401, SM4-CBC .1.104.2, GM/T 0010
# content types 1.2.156.10197.6.1.4.2.x), PKCS #9 attributes, and jtca's PLACEHOLDER arcs
# (hsm/oids.py: 1.3.6.1.4.1.32473.86, under RFC 5612's documentation PEN): .2.x the package
# attributes, .3.1 the content type of an SM2EnvelopedKey.
set -eu
OUT=${1:-$(dirname "$0")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
SIGNING_TIME=${SIGNING_TIME:-$(date -u +%y%m%d%H%M%SZ)}  # UTCTime YYMMDDHHMMSSZ
RECIPIENT_NAME=${RECIPIENT_NAME:-vector province}
ATTR=1.3.6.1.4.1.32473.86.2
SM2_ENVELOPED_KEY=1.3.6.1.4.1.32473.86.3.1

hex() { od -An -v -tx1 | tr -d ' \n'; }          # stdin bytes -> lowercase hex
unhex() { sed 's/\([0-9a-fA-F][0-9a-fA-F]\)/\\\\x\1/g' | xargs printf; }  # hex -> bytes

# -- test keys (made once; kept with the vectors) ---------------------------------------------
[ -f "$OUT/sender-sign.pem" ] || openssl genpkey -algorithm SM2 -out "$OUT/sender-sign.pem"
[ -f "$OUT/recipient-enc.pem" ] || openssl genpkey -algorithm SM2 -out "$OUT/recipient-enc.pem"
[ -f "$OUT/city-sm2.pem" ] || openssl genpkey -algorithm SM2 -out "$OUT/city-sm2.pem"
[ -f "$OUT/city-sm4.hex" ] || openssl rand -hex 16 > "$OUT/city-sm4.hex"
openssl pkey -in "$OUT/recipient-enc.pem" -pubout -out recipient.pub

key_id() {  # SM3 of the compressed public point: the last 33 bytes of the compressed SPKI
  openssl ec -in "$1" -pubout -conv_form compressed -outform DER 2>/dev/null \
    | tail -c 33 | openssl dgst -sm3 -binary | hex
}
field() {  # field NAME FILE: a colon-hex block of `openssl ec -text` ("priv:" or "pub:")
  openssl ec -in "$2" -text -noout 2>/dev/null \
    | awk -v f="$1:" '$1 == f {on = 1; next} /^[A-Za-z]/ {on = 0} on' | tr -d ' :\n'
}
SENDER_ID=$(key_id "$OUT/sender-sign.pem")
RECIPIENT_ID=$(key_id "$OUT/recipient-enc.pem")

# -- one package ------------------------------------------------------------------------------
# package KIND LABEL: KIND sm4 (EnvelopedData) or sm2 (SM2EnvelopedKey)
package() {
  kind=$1 label=$2
  content_key=$(openssl rand -hex 16)
  iv=$(openssl rand -hex 16)
  package_id=$(openssl rand -hex 16)
  # the content key, SM2-encrypted to the recipient: a DER SM2Cipher (GM/T 0009 §7.2, C1C3C2)
  printf '%s' "$content_key" | unhex > ck.bin
  openssl pkeyutl -encrypt -pubin -inkey recipient.pub -in ck.bin -out ck.sm2
  sm2cipher=$(hex < ck.sm2)
  if [ "$kind" = sm4 ]; then
    key=$(cat "$OUT/city-sm4.hex")
    printf '%s' "$key" | unhex > key.bin
    # KCV: SM4 of a zero block, first 3 bytes (the check value, not an encryption of the key)
    head -c 16 /dev/zero > zero.bin
    check=$(openssl enc -sm4-ecb -K "$key" -nopad -in zero.bin | head -c 3 | hex)
    openssl enc -sm4-cbc -K "$content_key" -iv "$iv" -in key.bin -out key.enc  # PKCS#7 pad
    content_type=1.2.156.10197.6.1.4.2.3
    cat > content.cnf <<CNF
[content]
version=INTEGER:1
recipients=SET:recipients
eci=SEQUENCE:eci
[recipients]
ri=SEQUENCE:ri
[ri]
version=INTEGER:2
rid=IMPLICIT:0,FORMAT:HEX,OCTETSTRING:$RECIPIENT_ID
alg=SEQUENCE:sm2enc
key=FORMAT:HEX,OCTETSTRING:$sm2cipher
[sm2enc]
algorithm=OID:1.2.156.10197.1.301.3
[eci]
type=OID:1.2.156.10197.6.1.4.2.1
alg=SEQUENCE:sm4cbc
content=IMPLICIT:0,FORMAT:HEX,OCTETSTRING:$(hex < key.enc)
[sm4cbc]
algorithm=OID:1.2.156.10197.1.104.2
iv=FORMAT:HEX,OCTETSTRING:$iv
CNF
  else
    scalar=$(field priv "$OUT/city-sm2.pem")
    scalar=$(printf '%064s' "$scalar" | tr ' ' 0 | tail -c 64)  # 32 bytes, leading zeros kept
    point=$(field pub "$OUT/city-sm2.pem")                      # 04 || X || Y
    printf '%s' "$scalar" | unhex > key.bin
    openssl enc -sm4-cbc -K "$content_key" -iv "$iv" -nopad -in key.bin -out key.enc
    x=$(printf '%s' "$point" | cut -c 3-66)
    prefix=$(( $(printf '%d' "0x$(printf '%s' "$point" | cut -c 129-130)") % 2 + 2 ))
    check=0$prefix$x                                             # the compressed point
    content_type=$SM2_ENVELOPED_KEY
    # the SM2Cipher's four fields, as asn1parse prints them, to write it inside the SEQUENCE
    openssl asn1parse -inform DER -in ck.sm2 > ck.txt
    c1x=$(awk -F: '/INTEGER/ {print $NF; exit}' ck.txt)
    c1y=$(awk -F: '/INTEGER/ {n++} /INTEGER/ && n == 2 {print $NF; exit}' ck.txt)
    c3=$(awk -F: '/OCTET STRING/ {n++} /OCTET STRING/ && n == 1 {print $NF; exit}' ck.txt)
    c2=$(awk -F: '/OCTET STRING/ {n++} /OCTET STRING/ && n == 2 {print $NF; exit}' ck.txt)
    cat > content.cnf <<CNF
[content]
symAlgID=SEQUENCE:sm4cbc
symEncryptedKey=SEQUENCE:sm2cipher
sm2PublicKey=FORMAT:HEX,BITSTRING:$point
sm2EncryptedPrivateKey=FORMAT:HEX,BITSTRING:$(hex < key.enc)
[sm4cbc]
algorithm=OID:1.2.156.10197.1.104.2
iv=FORMAT:HEX,OCTETSTRING:$iv
[sm2cipher]
x=INTEGER:0x$c1x
y=INTEGER:0x$c1y
hash=FORMAT:HEX,OCTETSTRING:$c3
cipherText=FORMAT:HEX,OCTETSTRING:$c2
CNF
  fi
  { echo "asn1=SEQUENCE:content"; cat content.cnf; } > c.cnf
  openssl asn1parse -genconf c.cnf -out content.der -noout
  digest=$(openssl dgst -sm3 -binary content.der | hex)
  kind_value=2; [ "$kind" = sm2 ] && kind_value=1
  cat > attributes.cnf <<CNF
[attributes]
a1=SEQUENCE:contentType
a2=SEQUENCE:messageDigest
a3=SEQUENCE:signingTime
a4=SEQUENCE:packageId
a5=SEQUENCE:recipientName
a6=SEQUENCE:recipientKeyId
a7=SEQUENCE:keyKind
a8=SEQUENCE:keyLabel
a9=SEQUENCE:checkValue
[contentType]
type=OID:1.2.840.113549.1.9.3
values=SET:contentTypeValue
[contentTypeValue]
v=OID:$content_type
[messageDigest]
type=OID:1.2.840.113549.1.9.4
values=SET:messageDigestValue
[messageDigestValue]
v=FORMAT:HEX,OCTETSTRING:$digest
[signingTime]
type=OID:1.2.840.113549.1.9.5
values=SET:signingTimeValue
[signingTimeValue]
v=UTCTIME:$SIGNING_TIME
[packageId]
type=OID:$ATTR.1
values=SET:packageIdValue
[packageIdValue]
v=FORMAT:HEX,OCTETSTRING:$package_id
[recipientName]
type=OID:$ATTR.2
values=SET:recipientNameValue
[recipientNameValue]
v=FORMAT:UTF8,UTF8String:$RECIPIENT_NAME
[recipientKeyId]
type=OID:$ATTR.3
values=SET:recipientKeyIdValue
[recipientKeyIdValue]
v=FORMAT:HEX,OCTETSTRING:$RECIPIENT_ID
[keyKind]
type=OID:$ATTR.4
values=SET:keyKindValue
[keyKindValue]
v=INTEGER:$kind_value
[keyLabel]
type=OID:$ATTR.5
values=SET:keyLabelValue
[keyLabelValue]
v=FORMAT:UTF8,UTF8String:$label
[checkValue]
type=OID:$ATTR.6
values=SET:checkValueValue
[checkValueValue]
v=FORMAT:HEX,OCTETSTRING:$check
CNF
  # what is signed: the attributes as a SET OF (tag 0x31), SM2 with SM3, Z over the default ID
  { echo "asn1=SET:attributes"; cat attributes.cnf; } > a.cnf
  openssl asn1parse -genconf a.cnf -out attributes.der -noout
  openssl pkeyutl -sign -inkey "$OUT/sender-sign.pem" -rawin -digest sm3 \
    -pkeyopt distid:1234567812345678 -in attributes.der -out signature.der
  cat > p.cnf <<CNF
asn1=SEQUENCE:contentInfo
[contentInfo]
type=OID:1.2.156.10197.6.1.4.2.2
content=EXPLICIT:0,SEQUENCE:signedData
[signedData]
version=INTEGER:1
digestAlgorithms=SET:digestAlgorithms
contentInfo=SEQUENCE:innerContentInfo
signerInfos=SET:signerInfos
[digestAlgorithms]
sm3=SEQUENCE:sm3
[sm3]
algorithm=OID:1.2.156.10197.1.401
[innerContentInfo]
type=OID:$content_type
content=EXPLICIT:0,SEQUENCE:content
[signerInfos]
signer=SEQUENCE:signerInfo
[signerInfo]
version=INTEGER:3
sid=IMPLICIT:0,FORMAT:HEX,OCTETSTRING:$SENDER_ID
digestAlgorithm=SEQUENCE:sm3
authenticatedAttributes=IMPLICIT:0,SET:attributes
digestEncryptionAlgorithm=SEQUENCE:sm2sign
encryptedDigest=FORMAT:HEX,OCTETSTRING:$(hex < signature.der)
[sm2sign]
algorithm=OID:1.2.156.10197.1.301.1
CNF
  cat content.cnf attributes.cnf >> p.cnf
  openssl asn1parse -genconf p.cnf -out "$OUT/package-$kind.der" -noout
  echo "wrote $OUT/package-$kind.der"
}

package sm4 vector-city-sm4
package sm2 vector-city-sm2
