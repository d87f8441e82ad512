"""Labelling methods: chat batching, label scoring, local models, embeddings, fine-tuned and offline models."""
