"""The merchant's web pages: plain server-rendered HTML, usable without JavaScript."""
