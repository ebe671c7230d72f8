"""ColorFlow's networks (ColorGuiders, guided super-resolution) as plain torch modules."""
