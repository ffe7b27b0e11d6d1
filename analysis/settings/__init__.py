"""What a run is asked to do and where it computes: params.yaml validated, the device and dtype resolved."""
