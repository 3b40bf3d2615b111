"""One module per page: its render() and the cached queries it draws from (dashboard/pages.py lists the pages)."""
