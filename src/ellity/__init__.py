"""Ellity: loyalty points for e-shops, integrated with Ecomail."""
