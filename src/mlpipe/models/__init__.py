"""Models: scikit-learn pipelines, torch networks, their exports, and the one scoring path."""
