"""verify_jwt on hostile tokens, in a process that imported web3 (its import lifts the recursion
limit to 100,000, so an unbounded parse of deep JSON overflows the C stack: issue 13 finding 13).

The header is depth-checked before it is parsed, the claims only once the signature holds and with
the same bound: a service verifying tokens from anyone refuses them with JWTError and stays up.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import base64, json, sys
    import web3  # noqa: F401  (lifts sys.getrecursionlimit() to 100,000)
    from keyreg.keys.jwt import JWTError, verify_jwt
    from keyreg.keys.service_keys import ServiceKey

    assert sys.getrecursionlimit() >= 100_000
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    deep = b"[" * 100_000 + b"]" * 100_000
    key = ServiceKey.generate("Ed25519", "k1")
    jwks = {"keys": [key.public_jwk()]}
    header = b64(json.dumps({"alg": key.jws_alg, "typ": "JWT", "kid": "k1"}).encode())
    signed_deep = header + "." + b64(deep)
    tokens = {
        "deep header": b64(deep) + "." + b64(b"{}") + ".AA",
        "deep claims, signed": signed_deep + "." + b64(key.sign(signed_deep.encode())),
        "header not an object": b64(b"[1]") + "." + b64(b"{}") + ".AA",
        "not base64 JSON": "e30.%%%.AA",
    }
    for name, token in tokens.items():
        try:
            verify_jwt(token, jwks)
        except JWTError as exc:
            print(name, "->", exc.code)
        else:
            raise SystemExit(f"{name}: accepted")
    """
)


def test_hostile_tokens_are_refused_in_a_process_that_imported_web3() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 4
    assert all(line.endswith("-> jwt_invalid") for line in lines)
