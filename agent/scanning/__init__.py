"""What a scan means: one scanned line turned into an event, at a station of a given role.

`interpret` decides the whole meaning of a read at its station (a receipt, a shipment, a
material and its line, a work order, a badge, or rejected), with `gs1_data` checking GS1 data
through biip, `symbology` naming the identifier, `gs1_elements` parsing elements cheaply and
`rejections` wording why a read is refused; `station` is a scanner's I/O: each read
interpreted, its meaning handed on and committed, then answered.
"""
