-- The forum's data in MySQL: users, boards, threads, posts. Every function returns its
-- result, or nil and an error (an error table from the mysql module, or a message).
local forum = {}
forum.__index = forum

-- forum.new(db) -> the data layer over a mysql pool
function forum.new(db) return setmetatable({ db = db }, forum) end

local function rows(res, err)
  if not res then return nil, err end
  return res
end

local function first(res, err)
  if not res then return nil, err end
  return res[1] or false -- false: no such row (nil is kept for errors)
end

function forum:boards()
  return rows(self.db:execute([[SELECT id, slug, title, description, thread_count, post_count
    FROM boards ORDER BY position, id]]))
end

function forum:board(slug)
  return first(self.db:execute([[SELECT id, slug, title, description, thread_count, post_count
    FROM boards WHERE slug = ?]], slug))
end

-- Threads of a board, the most recently active first.
function forum:threads(board_id, page, size)
  return rows(self.db:execute([[SELECT t.id, t.title, t.post_count, t.created_at, t.last_post_at,
      u.name AS author
    FROM threads t JOIN users u ON u.id = t.user_id
    WHERE t.board_id = ? ORDER BY t.last_post_at DESC, t.id DESC LIMIT ? OFFSET ?]],
    board_id, size, (page - 1) * size))
end

function forum:thread(id)
  return first(self.db:execute([[SELECT t.id, t.title, t.post_count, t.created_at, t.last_post_at,
      t.board_id, b.slug AS board_slug, b.title AS board_title, u.name AS author
    FROM threads t JOIN boards b ON b.id = t.board_id JOIN users u ON u.id = t.user_id
    WHERE t.id = ?]], id))
end

-- Posts of a thread, oldest first.
function forum:posts(thread_id, page, size)
  return rows(self.db:execute([[SELECT p.id, p.body, p.created_at, u.name AS author
    FROM posts p JOIN users u ON u.id = p.user_id
    WHERE p.thread_id = ? ORDER BY p.id LIMIT ? OFFSET ?]], thread_id, size, (page - 1) * size))
end

function forum:user_by_name(name)
  return first(self.db:execute("SELECT id, name, password_hash FROM users WHERE name = ?", name))
end

-- -> the new user's id, or false when the name is taken, or nil, err
function forum:create_user(name, password_hash)
  local res, err = self.db:execute(
    "INSERT INTO users (name, password_hash, created_at) VALUES (?, ?, UTC_TIMESTAMP(3))", name, password_hash)
  if res then return res.insert_id end
  if type(err) == "table" and err.errno == 1062 then return false end -- duplicate key
  return nil, err
end

function forum:set_password_hash(user_id, password_hash)
  return rows(self.db:execute("UPDATE users SET password_hash = ? WHERE id = ?", password_hash, user_id))
end

local function must(res, err)
  if not res then error(err, 0) end
  return res
end

-- -> thread id, post id
function forum:create_thread(board_id, user_id, title, body)
  return self.db:transaction(function(tx)
    local t = must(tx:execute([[INSERT INTO threads (board_id, user_id, title, created_at, last_post_at, post_count)
      VALUES (?, ?, ?, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3), 1)]], board_id, user_id, title))
    local p = must(tx:execute([[INSERT INTO posts (thread_id, user_id, body, created_at)
      VALUES (?, ?, ?, UTC_TIMESTAMP(3))]], t.insert_id, user_id, body))
    must(tx:execute("UPDATE boards SET thread_count = thread_count + 1, post_count = post_count + 1 WHERE id = ?",
      board_id))
    return t.insert_id, p.insert_id
  end)
end

-- -> post id, the post's number in its thread (for its page), or false when there is no
-- such thread
function forum:reply(thread_id, user_id, body)
  return self.db:transaction(function(tx)
    local t = must(tx:execute("SELECT board_id FROM threads WHERE id = ? FOR UPDATE", thread_id))[1]
    if not t then return false end
    local p = must(tx:execute([[INSERT INTO posts (thread_id, user_id, body, created_at)
      VALUES (?, ?, ?, UTC_TIMESTAMP(3))]], thread_id, user_id, body))
    must(tx:execute([[UPDATE threads SET post_count = post_count + 1, last_post_at = UTC_TIMESTAMP(3)
      WHERE id = ?]], thread_id))
    must(tx:execute("UPDATE boards SET post_count = post_count + 1 WHERE id = ?", t.board_id))
    local n = must(tx:execute("SELECT post_count FROM threads WHERE id = ?", thread_id))[1].post_count
    return p.insert_id, n
  end)
end

return forum
