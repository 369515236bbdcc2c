"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the API
process over the session's stack with an attested, funded pool."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from gridshare.core.chain import load_accounts
from gridshare.core.settings import Settings
from tests.api.conftest import POOL, Attested

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WALLET = """
window.ethereum = {
  request: async ({ method, params }) => {
    if (method === "eth_requestAccounts") return ["ADDRESS"];
    if (method === "personal_sign") return await window.walletSign(params[0]);
    throw new Error("unsupported " + method);
  },
};
"""
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_dashboard_shows_devices_chart_and_checks_a_proof(
    server: str, attested: Attested, stack_settings: Settings
) -> None:
    from playwright.sync_api import expect, sync_playwright

    investor = Account.from_key(load_accounts(stack_settings).investors[0].private_key)

    def personal_sign(message: str) -> str:
        signed = investor.sign_message(encode_defunct(text=message))
        return "0x" + signed.signature.hex().removeprefix("0x")

    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            # A browser wallet holding the first investor's key (EIP-1193 subset).
            page.expose_function("walletSign", personal_sign)
            page.add_init_script(WALLET.replace("ADDRESS", investor.address))
            page.goto(f"{server}/", wait_until="networkidle")

            expect(page.locator(".card", has_text=POOL)).to_be_visible()
            page.select_option("#device-pool", POOL)
            rows = page.locator("#devices tbody tr[data-device]")
            expect(rows).to_have_count(len(attested.fleet.devices))
            # A device shows its status while online and "offline" once it went silent.
            listed = httpx.get(f"{server}/v1/devices", params={"pool": POOL}).json()["items"]
            for device in listed:
                badge = page.locator(f'#devices tr[data-device="{device["device_id"]}"] .badge')
                expect(badge).to_have_text(device["status"] if device["online"] else "offline")

            # The income chart of a device with data in range: 90 days back covers the fleet.
            page.select_option("#chart-range", "90|1d")
            rows.nth(1).click()
            expect(page.locator("#chart")).to_have_attribute("data-drawn", "true")
            canvas = page.locator("#chart canvas")
            expect(canvas).to_have_count(1)
            assert canvas.bounding_box()["width"] > 300

            page.select_option("#att-pool", POOL)
            first = page.locator("#attestations tbody tr").first
            expect(first).to_contain_text("confirmed")
            first.locator("button.verify").click()
            verdict = page.locator("#proof-verdict")
            expect(verdict).to_have_attribute("data-valid", "true", timeout=20_000)
            expect(verdict).to_contain_text("Proof valid")
            signatures = page.locator("#signature-verdict")
            expect(signatures).to_contain_text("device signatures behind this leaf verified")
            verified = signatures.get_attribute("data-verified")
            assert verified == signatures.get_attribute("data-signatures")
            assert int(verified or 0) > 0

            page.click("#signin")
            holding = page.locator("#portfolio tr", has_text=POOL)
            expect(holding).to_be_visible()
            expect(page.locator("#portfolio")).to_contain_text(investor.address)

            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
