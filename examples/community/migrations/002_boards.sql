-- The boards a new forum starts with.
INSERT INTO boards (slug, title, description, position) VALUES
  ('general', 'General', 'Anything that fits nowhere else.', 1),
  ('luaio', 'luaio', 'The runtime this forum runs on: Lua, libuv, one static binary.', 2),
  ('meta', 'Meta', 'About this forum itself.', 3);
