"""gs-ds-env: theme kernels, images and SageMaker training from one .env."""
