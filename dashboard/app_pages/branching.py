"""The Branching factor page, drawn by dashboard/views/branching.py."""

from dashboard.views import branching

branching.render()
