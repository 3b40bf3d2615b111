"""The Positions page, drawn by dashboard/views/positions.py."""

from dashboard.views import positions

positions.render()
