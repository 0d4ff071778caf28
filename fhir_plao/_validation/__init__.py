"""Internals of :mod:`fhir_plao.validation` (not a public interface)."""
