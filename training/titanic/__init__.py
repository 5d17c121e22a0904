"""Titanic survival: features, model and the SageMaker training-container entry point."""
