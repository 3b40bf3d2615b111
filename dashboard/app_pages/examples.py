"""The Examples page, drawn by dashboard/views/examples.py."""

from dashboard.views import examples

examples.render()
