"""The medfed ClientApp: a thin Flower shell over the site handlers."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from client.handlers import handle, site_from_context
from client.site import SiteConfig


def build_client_app(resolve_site: Callable[[Context], SiteConfig] = site_from_context) -> ClientApp:
    """A ClientApp whose site settings come from `resolve_site` (node config when deployed)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle(msg, resolve_site(context), train=True)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return handle(msg, resolve_site(context), train=False)

    return app


app = build_client_app()
