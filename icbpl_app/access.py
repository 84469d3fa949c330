"""Who may use the app. It listens on this machine only (.streamlit/config.toml: server.address
= "localhost"). Serving it on a network is a decision: the person starting it sets
ICBPL_ALLOW_NETWORK=1, and should set ICBPL_ACCESS_TOKEN, a shared secret every browser must
type once per session (or put Streamlit's own authentication, and TLS, in front: README).
Without ICBPL_ALLOW_NETWORK, an app started on another address refuses to show anything.
"""
from __future__ import annotations

import hmac
import os

ALLOW_NETWORK_ENV = "ICBPL_ALLOW_NETWORK"
TOKEN_ENV = "ICBPL_ACCESS_TOKEN"
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")


def _yes(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def address_refusal(address: str | None) -> str | None:
    """Why the app will not serve on `address` (None: it will). No address means every interface."""
    if (address or "").strip() in LOCAL_ADDRESSES or _yes(ALLOW_NETWORK_ENV):
        return None
    where = f"the address {address}" if address else "every network interface"
    return (f"This app was started to listen on {where}, where other machines can reach it, and it has "
            "no login of its own. Start it on this machine only (`streamlit run app.py`, as the project's "
            f".streamlit/config.toml does), or serve it on a network on purpose: set {ALLOW_NETWORK_ENV}=1, "
            f"and {TOKEN_ENV} to a secret each browser must give (see the README's Security section).")


def token_required() -> bool:
    return bool(os.environ.get(TOKEN_ENV))


def token_matches(given: str) -> bool:
    """Compared in constant time (a timing side channel would leak the secret)."""
    expected = os.environ.get(TOKEN_ENV, "")
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
