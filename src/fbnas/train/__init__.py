"""fbnas.train"""
