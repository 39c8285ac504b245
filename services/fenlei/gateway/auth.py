"""Local token authority: an RSA key pair under FENLEI_HOME, the JWKS the gateway checks
tokens against, and `mint` for `fenlei token ROLE`.

A token names one role. Roles are ordered, and each may do what the ones before it may:
which RPC needs which role is the contract's `fenlei.v1.required_role` option.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fenlei.errors import InvalidInput
from fenlei.v1 import common_pb2

ROLES = ("viewer", "trainer", "admin")
ROLE_CLAIM = "role"
KEY_ID = "fenlei-local"
# A token travels only as `authorization: Bearer <token>` (the scheme in any case).
BEARER = "Bearer"


def role_name(role: int) -> str:
    """`ROLE_TRAINER` → "trainer"."""
    return common_pb2.Role.Name(role).removeprefix("ROLE_").lower()


def roles_at_least(role: str) -> tuple[str, ...]:
    return ROLES[ROLES.index(role) :]


class Authority:
    def __init__(self, directory: Path, issuer: str, audience: str) -> None:
        self.directory = directory
        self.issuer = issuer
        self.audience = audience

    @property
    def key_file(self) -> Path:
        return self.directory / "jwt-signing-key.pem"

    def _private_key(self) -> rsa.RSAPrivateKey:
        if not self.key_file.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            temporary = self.key_file.with_suffix(".tmp")
            temporary.write_bytes(pem)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.key_file)  # two first starts never see half a key
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def jwks(self) -> str:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._private_key().public_key()))
        return json.dumps({"keys": [{**public, "kid": KEY_ID, "alg": "RS256", "use": "sig"}]})

    def mint(self, role: str, ttl_seconds: float = 3600, subject: str = "") -> str:
        if role not in ROLES:
            raise InvalidInput(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        if ttl_seconds <= 0:
            raise InvalidInput(f"a token must live a positive number of seconds, not {ttl_seconds}")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject or role,
            "iat": now,
            "exp": now + int(ttl_seconds),
            ROLE_CLAIM: role,
        }
        return jwt.encode(claims, self._private_key(), algorithm="RS256", headers={"kid": KEY_ID})
