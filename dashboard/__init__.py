"""The Streamlit dashboard: reads format-v1 artifacts, never loads a model (run `streamlit run dashboard/app.py`)."""
