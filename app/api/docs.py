"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from assets shipped in the package: no CDN, so they work on an
air-gapped cluster. The assets under `app/api/static/` are swagger-ui-dist 5.36.0 (Apache-2.0) and redoc
2.5.4 (MIT), copied from their npm packages with their licence files (`npm pack swagger-ui-dist redoc`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_PATH", "install_docs"]

STATIC_PATH = "/static/docs"
_ASSETS = Path(__file__).with_name("static")


def install_docs(app: FastAPI) -> None:
    """Serve the assets at `STATIC_PATH` and the two documentation pages (create the app with
    `docs_url=None, redoc_url=None` so that FastAPI does not add its CDN-loading ones)."""
    app.mount(STATIC_PATH, StaticFiles(directory=_ASSETS), name="docs-assets")
    favicon = f"{STATIC_PATH}/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{STATIC_PATH}/redoc.standalone.js", redoc_favicon_url=favicon, with_google_fonts=False,
        )
