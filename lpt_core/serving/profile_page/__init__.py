"""The profile page: a person reads a user's history and profiles, edits a profile and watches the
served model's recommendations change (`lpt profile-page`, started by `make ui`).

workbench: what the page does, on the registered model's own predict; app: the web app and its
one hand-written page (static/), with no script or style from anywhere else.
"""

from __future__ import annotations

from lpt_core import paths, tracking
from lpt_core.serving import registry

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    tracking_uri: str | None = None,
    model_name: str = registry.MODEL_NAME,
    alias: str = registry.CHAMPION,
    version: str | None = None,
) -> None:
    """Serve the page for `model_name` at `version`, else at `alias`, from the registry at
    `tracking_uri` (default: the work folder's store), with the tables of the work folder's
    outputs; until stopped (Ctrl-C)."""
    import uvicorn

    from lpt_core.serving.profile_page.app import create_app
    from lpt_core.serving.profile_page.workbench import PageTables, ProfileWorkbench, load_registered

    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)

    def make_workbench() -> ProfileWorkbench:
        served = load_registered(tracking_uri, model_name, alias, version)
        return ProfileWorkbench(served, PageTables.load(paths.Outputs.default(), served.variant))

    uvicorn.run(create_app(make_workbench), host=host, port=port, log_level="info")
