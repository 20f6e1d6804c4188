"""The Lethe privacy console inside Airflow 3: a FastAPI app served by the API server under ``/lethe``
(`app`) and a navigation entry "Lethe" that shows it inside Airflow's UI. Airflow loads it through the
``airflow.plugins`` entry point in pyproject.toml (installed with the project). Pages, roles and what it
never shows: README, "Privacy console"."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/lethe"


class LetheConsolePlugin(AirflowPlugin):
    name = "lethe_console"

    @staticmethod
    def _app():
        from plugins.console.app import app

        return app

    fastapi_apps = [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Lethe privacy console"}]
    external_views = [{
        "name": "Lethe",
        "href": f"{URL_PREFIX}/requests",
        # no url_route: a link to the console's own pages, not an embedded iframe (Airflow sandboxes its
        # iframes without top navigation, so links out to the approval tasks would not open)
        "destination": "nav",
        "nav_top_level": True,
    }]
