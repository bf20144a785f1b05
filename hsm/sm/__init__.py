"""National commercial algorithms (第八条): SM2 (GB/T 32918), SM3 (GB/T 32905), SM4 (GB/T 32907).

No primitive is implemented here: SM2 runs in Tongsuo through ``tongsuopy``, SM3 and SM4 in
OpenSSL through ``cryptography``. This package only adapts encodings (raw r‖s, DER, compressed
points) and names things the way the standards do.
"""

from hsm.sm.sm2 import (
    DEFAULT_ID,
    SM2_CURVE_OID,
    SM2PrivateKey,
    SM2PublicKey,
    der_to_raw,
    raw_to_der,
    sm2_z,
)
from hsm.sm.sm3 import sm3
from hsm.sm.sm4 import SM4_BLOCK, sm4_decrypt_block, sm4_encrypt_block, sm4_key_check_value

__all__ = [
    "DEFAULT_ID",
    "SM2_CURVE_OID",
    "SM4_BLOCK",
    "SM2PrivateKey",
    "SM2PublicKey",
    "der_to_raw",
    "raw_to_der",
    "sm2_z",
    "sm3",
    "sm4_decrypt_block",
    "sm4_encrypt_block",
    "sm4_key_check_value",
]
