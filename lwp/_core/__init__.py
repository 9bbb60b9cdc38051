"""lwp's private core: the scheduler, LWPs, green threads and the park/wake door.

Nothing outside ``lwp`` should import from here; ``lwp/__init__.py`` re-exports
the public names.
"""
