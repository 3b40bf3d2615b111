"""The Token types page, drawn by dashboard/views/token_types.py."""

from dashboard.views import token_types

token_types.render()
