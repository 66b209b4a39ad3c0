"""A local stand-in for Anthropic's Messages API; see `standin.app`."""

from standin.app import create_app

__all__ = ["create_app"]
