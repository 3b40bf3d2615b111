"""The Overview page, drawn by dashboard/views/overview.py."""

from dashboard.views import overview

overview.render()
