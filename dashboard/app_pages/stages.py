"""The Stages page, drawn by dashboard/views/stages.py."""

from dashboard.views import stages

stages.render()
