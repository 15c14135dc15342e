from django.db import migrations

# A draw record is the published, verifiable result: once written it never
# changes and is never deleted, whatever the code or the admin tries.
FORBID = """
CREATE FUNCTION draws_draw_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'draw records are immutable (draw %)', OLD.id USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER draws_draw_no_update BEFORE UPDATE OR DELETE ON draws_draw
    FOR EACH ROW EXECUTE FUNCTION draws_draw_immutable();
"""

ALLOW = """
DROP TRIGGER IF EXISTS draws_draw_no_update ON draws_draw;
DROP FUNCTION IF EXISTS draws_draw_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("draws", "0002_initial")]

    operations = [migrations.RunSQL(FORBID, ALLOW)]
