"""Errors that leave a process never carry credentials, URL paths (API keys live there) or,
for /health, file paths."""

from __future__ import annotations

import pytest

from gridshare.core import db
from gridshare.core.errors import ServiceUnreachable, redact
from gridshare.core.settings import Settings
from tests.support import free_port


def test_unreachable_database_error_has_no_password() -> None:
    url = f"postgresql://gridshare:s3cret-pw@127.0.0.1:{free_port()}/gridshare"
    with pytest.raises(ServiceUnreachable) as caught:
        db.connect(Settings(db_url=url))
    text = str(caught.value)
    assert "s3cret-pw" not in text and "127.0.0.1" in text and "GRIDSHARE_DB_URL" in text


def test_urls_keep_scheme_host_and_port_only() -> None:
    text = "failed: https://user:pw@rpc.example.net:8545/v3/0123abcdef?key=zz (timeout)"
    assert redact(text) == "failed: https://rpc.example.net:8545 (timeout)"


def test_file_paths_are_cut_to_their_last_part() -> None:
    text = "could not open /srv/gridshare/state/tls/server.key: permission denied"
    assert redact(text, paths=True) == "could not open .../server.key: permission denied"
    assert redact("ratio 1/2 and 10/20/30", paths=True) == "ratio 1/2 and 10/20/30"
