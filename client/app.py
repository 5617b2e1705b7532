"""The medfed ClientApp: a thin Flower shell over the site handlers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.secure import secure_aggregation_mod
from client.site import SiteConfig, site_from_context


def clip_if_asked(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's fixedclipping_mod, applied only when the server's central-DP wrapper sends a clipping norm."""
    config = msg.content.config_records.get("config")
    if config is not None and KEY_CLIPPING_NORM in config:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def build_client_app(
    resolve_site: Callable[[Context], SiteConfig] = site_from_context, mods: Sequence[Mod] = ()
) -> ClientApp:
    """A ClientApp whose site settings come from `resolve_site` (node config when deployed); `mods` wrap every
    handler (benchmarks and tests inject faulty sites this way)."""
    app = ClientApp(mods=list(mods))

    @app.train(mods=[secure_aggregation_mod(resolve_site), clip_if_asked])
    def train(msg: Message, context: Context) -> Message:
        from client.handlers import handle  # torch and the tasks: only for messages that train or evaluate

        return handle(msg, resolve_site(context), train=True)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        from client.handlers import handle

        return handle(msg, resolve_site(context), train=False)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        from client.handlers import handle  # the federated setup step (survival's event-time histogram)

        return handle(msg, resolve_site(context), train=False)

    return app


app = build_client_app()
