"""The profile page's web app: one hand-written page (static/) and a small JSON API over a
ProfileWorkbench.

The model loads in a background thread once the server is up, so the page answers at once and
says "loading" (or why loading failed, e.g. no champion yet) instead of a refused connection.
Route handlers are plain functions, which FastAPI runs in its thread pool: a profile being
written from a history (seconds) does not stop the server answering the page meanwhile.
Every error reaches the page as {"message": ...}, never as a stack trace; the page shows it as
text. A strict Content-Security-Policy (scripts and styles from this server only, no inline
script) means that markup in a profile could not run even if it were ever inserted as HTML.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from lpt_core.serving.profile_page.workbench import (
    MAX_PROFILE_CHARS,
    QUICK_EDITS,
    PageError,
    ProfileWorkbench,
    QuickEditKind,
)

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
log = logging.getLogger(__name__)


class QuickEdit(BaseModel):
    kind: QuickEditKind
    genre: str


class RecommendBody(BaseModel):
    """A profile to rank (null: let the model write one from the user's history), the user whose
    history is left out of the results (null: cold start), an optional quick edit to apply first,
    and the list shown before (to say what moved)."""

    profile: str | None = None
    user_id: str | None = None
    edit: QuickEdit | None = None
    previous_item_ids: list[str] | None = None


class _Loaded:
    """The workbench once loaded, or why it could not be."""

    def __init__(self) -> None:
        self.workbench: ProfileWorkbench | None = None
        self.error: str | None = None

    def load(self, make_workbench: Callable[[], ProfileWorkbench]) -> None:
        try:
            self.workbench = make_workbench()
        except Exception as error:  # shown on the page: the server stays up to say why
            log.exception("the profile page could not load its model")
            self.error = f"{type(error).__name__}: {error}"

    def get(self) -> ProfileWorkbench:
        if self.workbench is None:
            raise PageError(f"The model could not be loaded: {self.error}" if self.error else "The model is still loading.")
        return self.workbench


def create_app(make_workbench: Callable[[], ProfileWorkbench]) -> FastAPI:
    """The app; `make_workbench` (loading the model and tables) runs in a thread at start-up."""
    loaded = _Loaded()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        threading.Thread(target=loaded.load, args=(make_workbench,), name="load-model", daemon=True).start()
        yield

    app = FastAPI(title="langptune profile page", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(PageError)
    async def page_error(_: Request, error: PageError) -> JSONResponse:
        return JSONResponse({"message": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors())
        return JSONResponse({"message": f"The page sent a malformed request ({problems})."}, status_code=400)

    @app.exception_handler(Exception)
    async def failed(_: Request, error: Exception) -> JSONResponse:
        log.error("profile page request failed", exc_info=error)
        return JSONResponse(
            {"message": f"The server failed ({type(error).__name__}); its log has the details."}, status_code=500
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/status")
    def status() -> dict:
        """Whether the model is ready, and what the page needs to build its controls."""
        if loaded.workbench is None:
            return {"ready": False, "error": loaded.error}
        workbench = loaded.workbench
        return {
            "ready": True,
            "model": workbench.served.description,
            "model_uri": workbench.served.uri,
            "variant": workbench.served.variant,
            "k": workbench.k,
            "genres": workbench.genres,
            "quick_edits": list(QUICK_EDITS),
            "users": workbench.offered_users(),
            "notes": workbench.tables.notes,
            "write_seconds": workbench.last_write_seconds,
            "max_profile_chars": MAX_PROFILE_CHARS,
        }

    @app.get("/api/users/{user_id:path}")  # an id may hold a "/"
    def person(user_id: str) -> dict:
        return asdict(loaded.get().person(user_id))

    @app.post("/api/recommend")
    def recommend(body: RecommendBody) -> dict:
        edit = None if body.edit is None else (body.edit.kind, body.edit.genre)
        ranking = loaded.get().recommend(body.profile, body.user_id, edit, body.previous_item_ids)
        return asdict(ranking)

    return app
