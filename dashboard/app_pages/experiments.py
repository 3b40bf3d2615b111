"""The Experiments page, drawn by dashboard/views/experiments.py."""

from dashboard.views import experiments

experiments.render()
