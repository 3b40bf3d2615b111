"""The Compare page, drawn by dashboard/views/compare.py."""

from dashboard.views import compare

compare.render()
