"""A signer in its own process: `gridshare oracle signer` serves one key over HTTP, and the
aggregator reaches it through `RemoteSigner` (GRIDSHARE_ORACLE_SIGNER_URLS).

The protocol has one call, `POST /v1/sign {"pool", "epoch"}`: the signer reads the epoch's
data cutoff and the telemetry from its own database URL, checks them against its own reading
of the chain, computes the epoch and signs the EIP-712 digest of its own result, or says why
it refuses. Nothing it signs is handed to it. The aggregator checks that the signature it gets
back recovers to the signer's address before counting it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from gridshare.core.chain.accounts import ChainAccount
from gridshare.core.errors import ConfigError
from gridshare.core.signing import address_for_key
from gridshare.oracle.signer import OracleSigner, Prepared, SignerAnswer

log = logging.getLogger(__name__)


def load_key(path: Path) -> ChainAccount:
    """A signer's key file: JSON with `private_key` (as in accounts.json) or the 0x-hex key."""
    try:
        text = path.read_text().strip()
        untrusted_key = json.loads(text)["private_key"] if text.startswith("{") else text
        raw = bytes.fromhex(str(untrusted_key).removeprefix("0x"))
        return ChainAccount(address_for_key(raw), "0x" + raw.hex())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError("--key-file", f"{path}: not a private key ({exc})") from exc


def answer_json(answer: SignerAnswer) -> dict[str, Any]:
    return {
        "signer": answer.signer,
        "digest": "0x" + answer.digest.hex() if answer.digest else None,
        "signature": "0x" + answer.signature.hex() if answer.signature else None,
        "detail": answer.detail,
    }


def serve(signer: OracleSigner, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server for one signer (call `serve_forever()`; `shutdown()` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/sign":
                self._reply(404, {"error": "not found"})
                return
            try:
                length = min(int(self.headers.get("Content-Length", "0")), 4096)
                untrusted = json.loads(self.rfile.read(length))
                pool, epoch = str(untrusted["pool"]), int(untrusted["epoch"])
            except (ValueError, KeyError, TypeError):
                self._reply(400, {"error": 'expected {"pool": name, "epoch": n}'})
                return
            answer = signer.sign_epoch(pool, epoch)
            log.info(
                "sign request",
                extra={"fields": {"pool": pool, "epoch": epoch, "detail": answer.detail}},
            )
            self._reply(200, answer_json(answer))

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # structured logs instead
            pass

    return ThreadingHTTPServer((host, port), Handler)


@dataclass(frozen=True)
class RemoteSigner:
    """A signer process, as the aggregator sees it (the same calls as `OracleSigner`)."""

    address: str
    url: str
    timeout: float

    def prepare(self, pool: str, epoch: int, cutoff: object = None) -> Prepared:
        """A remote signer computes only when asked to sign: the aggregator computes the
        epoch itself and then asks every signer (see signatures.compute_with_signers)."""
        return Prepared(self, None, None, "remote: computes when asked to sign", None)  # type: ignore[arg-type]

    def sign_epoch(self, pool: str, epoch: int) -> SignerAnswer:
        try:
            response = httpx.post(
                f"{self.url}/v1/sign", json={"pool": pool, "epoch": epoch}, timeout=self.timeout
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return SignerAnswer(self.address, None, None, f"failed: {exc}".splitlines()[0])
        digest = bytes.fromhex(body["digest"][2:]) if body.get("digest") else None
        signature = bytes.fromhex(body["signature"][2:]) if body.get("signature") else None
        if signature is not None and digest is not None:
            signed_by = Account._recover_hash(digest, signature=signature)
            if signed_by.lower() != self.address.lower():
                return SignerAnswer(self.address, digest, None, f"failed: signed by {signed_by}")
        return SignerAnswer(self.address, digest, signature, str(body.get("detail", "")))
