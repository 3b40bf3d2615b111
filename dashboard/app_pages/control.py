"""The Template control page, drawn by dashboard/views/control.py."""

from dashboard.views import control

control.render()
