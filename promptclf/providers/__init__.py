"""The provider registry: model strings, each backend's options, and how it builds a Method."""
