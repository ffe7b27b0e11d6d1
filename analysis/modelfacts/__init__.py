"""Facts about models without their weights: the families, the published architectures, random-weight models."""
