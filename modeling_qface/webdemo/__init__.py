"""The web demo: `qface serve` and the Spaces entry point `app.py` (`serve`, Gradio on 127.0.0.1)."""
