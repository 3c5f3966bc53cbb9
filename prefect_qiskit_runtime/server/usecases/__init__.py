"""The service's rules, between the routes (``server/api/``) and the store.

One module per resource: :mod:`.programs`, :mod:`.jobs`, :mod:`.stream` (interim results) and
:mod:`.service`; :mod:`.validation` holds the checks of inputs and :mod:`.errors` the typed errors
the app's exception handlers turn into HTTP answers. Nothing here builds an HTTP response.
"""
