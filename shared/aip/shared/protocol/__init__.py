"""The proxy <-> approver control plane (DESIGN §6): ``codec`` (the frame envelope and strict
decoding), ``messages`` (a proxy session's messages), ``status`` (aipctl's status request)
and ``frames`` (what each side accepts). Nothing else parses these frames."""
