"""The pixel stage: masker interface and simple maskers, template, avatar, parameters, fit, renderers, digital mask."""
