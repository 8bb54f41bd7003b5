"""fbnas.data"""
