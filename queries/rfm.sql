-- rfm: RFM at the reference time T, over the lines up to it (rfm_at.sql is the definition).
SELECT * FROM rfm_at((SELECT t FROM reference_time))
