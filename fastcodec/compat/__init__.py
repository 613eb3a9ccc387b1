"""Adapters that let other libraries' users swap in fastcodec's native pieces."""
